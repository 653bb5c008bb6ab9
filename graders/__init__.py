"""llm-katas: the harness that runs kata tests against an implementation and grades them.

What tests use:

    from graders import check, fixtures, student, reference, oracle, throughput, unwrap,
                         in_one_crossing, is_instance, type_name

`oracle(fn, *args)` computes an expected value everywhere except in the grading sandbox,
where it is `WITHHELD` (see `graders.oracle`); `WITHHELD` is the placeholder itself, which
the sandbox's stripped copies of the tests name (see `graders.withhold`).
"""

from . import check, fixtures, throughput
from .boundary import in_one_crossing, is_instance, reference, student, type_name, unwrap
from .oracle import WITHHELD, oracle

__all__ = ["WITHHELD", "check", "fixtures", "in_one_crossing", "is_instance", "oracle", "reference", "student",
           "throughput", "type_name", "unwrap"]
