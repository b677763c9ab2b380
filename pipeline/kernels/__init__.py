"""The kernels: the logic of conforming, validation, preprocessing, scoring, drift and routing as functions of
rows in memory (Arrow/pandas in; rows, reasons, counts out), with no paths, engines, ledger, registry or run
context. The stages (``pipeline.validate``, ``preprocess``, ``score``, ``drift``, ``cascade``) are shells that
stream staged files through them; ``kernels.flow`` composes them for a shell that holds its rows (the online
door, a test). Import the module you need (``from pipeline.kernels import validate``): nothing is re-exported
here."""
