"""What the sender does with a batch of queue messages: pack, send, map results back, keep records."""
