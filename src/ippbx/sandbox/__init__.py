"""Sandbox mode (`ippbx demo`): the real PBX with the demo configuration plus simulated
SIP endpoints, a carrier on the demo's peer trunk and phones registered as the demo
extensions, all talking SIP over loopback to the PBX.

Modules: `runner` (the `Sandbox` itself), `carrier`, `phones`, `endpoint` (what both
share), `plan` (the seeded call plan), `config` (the demo configuration with sandbox
ports), `cli` (the `ippbx demo` options). Nothing is imported here, so `ippbx --help`
stays fast.
"""
