"""SIP: sans-IO parsing, transactions, dialogs and digest; sockets only in transport."""
