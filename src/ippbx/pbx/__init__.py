"""The telephony domain: registrar, dial plan, trunks, B2BUA, live-call registry, CDR.

The modules every call runs through run compiled to C where `make native` built them for
this very source, with the SIP stack (`ippbx.native`); as Python otherwise.
"""

from ippbx.native import use_compiled

use_compiled(__name__, __path__)
