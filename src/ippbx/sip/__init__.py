"""SIP protocol: sans-IO message parsing, transactions, dialogs, digest; sockets only in transport."""
