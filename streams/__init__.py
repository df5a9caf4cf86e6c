"""twinledger stream side: the pure ledger core, codecs, gateways, the Faust app and the CLI."""

__version__ = "0.1.0"
