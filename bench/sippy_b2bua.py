"""Baseline for scenario (b) of sip_cps.py: PyPI `sippy`'s `b2bua_simple` with ONE receive
thread (its default of 3 reorders 180/200; measured on this machine class).

Runs under bench/.venv-sippy/bin/python (sip_cps.py creates that virtualenv and installs
`sippy` into it); start with SIPLOG_BEND=none so logging is off. Arguments are
b2bua_simple's: -f -l ADDR -p PORT -n NEXT_HOP_ADDR:PORT.
"""

import sys

import sippy.Udp_server

sippy.Udp_server.Udp_server_opts.nworkers = 1

import sippy.b2bua_simple  # noqa: E402  (after the nworkers override, as docs/testing.md says)

if __name__ == "__main__":
    sys.exit(sippy.b2bua_simple.main_func())
