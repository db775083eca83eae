"""Kubernetes resource quantities as exact numbers: ``"500m"`` -> 0.5, ``"4Gi"`` -> 4294967296.

Only the forms the schema's ``quantity`` pattern admits (common.schema.json#/$defs/quantity):
digits with an optional fraction and one suffix, decimal (``m``, ``k``, ``M`` ... ``E``) or
binary (``Ki`` ... ``Ei``). The value is what the API server computes (apimachinery
``resource.Quantity``); the tests compare it with the ``kubernetes`` client's
``parse_quantity`` on generated inputs. Kept here rather than importing that client: it is not
a dependency of validation, and importing it loads the whole generated API.

Example::

    >>> parse_quantity("1.5Gi")
    Decimal('1610612736.0')
"""

from __future__ import annotations

import re
from decimal import Decimal

_SUFFIX = {"m": Decimal("0.001"), "": Decimal(1)}
_SUFFIX |= {s: Decimal(1000) ** (i + 1) for i, s in enumerate("kMGTPE")}
_SUFFIX |= {s + "i": Decimal(1024) ** (i + 1) for i, s in enumerate("KMGTPE")}
_FORM = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_BINARY = (("Ei", 1024**6), ("Pi", 1024**5), ("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024))


def parse_quantity(text: str) -> Decimal:
    """The exact value of a quantity of the schema's form; ValueError for any other text."""
    m = _FORM.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity such as 500m, 2, 1.5 or 4Gi")
    return Decimal(m.group(1)) * _SUFFIX[m.group(2) or ""]


def cpu_text(cores: Decimal) -> str:
    """Cores for a message or a manifest: ``Decimal("2.5")`` -> ``"2500m"``, whole cores bare."""
    if cores == cores.to_integral_value():
        return str(int(cores))
    return f"{int((cores * 1000).to_integral_value(rounding='ROUND_CEILING'))}m"


def memory_text(size: Decimal) -> str:
    """Bytes in the largest binary unit that divides them: ``4294967296`` -> ``"4Gi"``."""
    whole = int(size.to_integral_value(rounding="ROUND_CEILING"))
    for suffix, unit in _BINARY:
        if whole % unit == 0:
            return f"{whole // unit}{suffix}"
    return str(whole)
