"""The multitenant DICOM operator: ``kopf run --standalone -m mtdicom_operator``.

Importing the package registers the kopf handlers (that is what ``-m`` relies on). The
folder is ``operator/`` but the package is ``mtdicom_operator``: a top-level ``operator``
package would shadow Python's standard ``operator`` module.
"""

from mtdicom_operator import handlers

__all__ = ["handlers"]
