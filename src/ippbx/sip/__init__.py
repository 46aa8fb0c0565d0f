"""SIP: sans-IO parsing, transactions, dialogs and digest; sockets only in transport.

The modules run compiled to C where `make native` built them for this very source
(`ippbx.native`); as Python otherwise.
"""

from ippbx.native import use_compiled

use_compiled(__name__, __path__)
