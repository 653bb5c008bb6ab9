"""llm-katas: the harness that runs kata tests against an implementation and grades them.

What tests use:

    from graders import check, fixtures, student, reference, throughput, unwrap
"""

from . import check, fixtures, throughput
from .boundary import reference, student, unwrap

__all__ = ["check", "fixtures", "reference", "student", "throughput", "unwrap"]
