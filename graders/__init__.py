"""llm-katas: the harness that runs kata tests against an implementation and grades them.

What tests use:

    from graders import check, fixtures, student, reference, throughput, unwrap, in_one_crossing,
                         is_instance, type_name
"""

from . import check, fixtures, throughput
from .boundary import in_one_crossing, is_instance, reference, student, type_name, unwrap

__all__ = ["check", "fixtures", "in_one_crossing", "is_instance", "reference", "student", "throughput", "type_name", "unwrap"]
