"""The telephony domain: registrar, dial plan, trunks, B2BUA, live-call registry, CDR."""
