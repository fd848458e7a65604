"""Shared code of the Braze event forwarder: every Lambda function's logic lives here."""
