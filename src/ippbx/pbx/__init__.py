"""The telephony domain: registrar, dial plan, trunks, B2BUA, live-call registry, CDR.

`b2bua.py` runs compiled to C where `make native` built it for this very source
(`ippbx.native`); as Python otherwise, as every other module here does.
"""

from ippbx.native import use_compiled

use_compiled(__name__, __path__)
