"""The HTTP API's OpenAPI document, generated from the code (`make openapi`), and its browsable page.

A development tool, like cli/ and local/: no function imports it and nothing of it ships to Lambda.
"""
