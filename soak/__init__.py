"""The soak test (`make soak`): the whole pipeline under Braze faults and sender crashes, counted.

run.py starts the local stack and waits; load.py is the clients; kills.py crashes the sender's
execution environment at chosen points; report.py counts every object's fate from Braze's side.
"""
