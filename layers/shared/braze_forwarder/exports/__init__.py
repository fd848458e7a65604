"""Braze's global control group, exported on a schedule into the data lake.

start.py asks Braze for the export (ExportStarterFunction), callback.py takes Braze's callback and
fans out one copy task per file (ExportCallbackFunction), copier.py streams each file into the
lake and finishes the job (ExportCopierFunction). jobs.py is the job record they share, tasks.py
the queue message between callback and copier, lake.py the lake's layout, streams.py the
constant-memory zip/gzip → gzip NDJSON conversion, urls.py what may be fetched.
"""
