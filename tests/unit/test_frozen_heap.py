"""A worker's start-up heap is frozen out of the cyclic GC, and a model switch still frees the old model
(bentos.lifecycle). In a child process: freezing this test process's heap would outlive the test."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_frozen_model_in_a_reference_cycle_is_still_freed_on_a_switch_and_the_heap_refreezes() -> None:
    code = textwrap.dedent(
        """
        import gc, weakref
        from bentos.lifecycle import freeze_heap, wait_released

        class Model:
            pass

        old = Model()
        old.self = old  # a cycle: only the cyclic collector can free it
        gone = weakref.ref(old)
        freeze_heap()
        frozen_at_start = gc.get_freeze_count()
        del old
        gc.collect()
        kept_while_frozen = gone() is not None  # frozen objects are not collected...
        released = wait_released(gone, timeout_s=5)  # ...until a switch thaws the heap
        print(frozen_at_start > 0, kept_while_frozen, released, gc.get_freeze_count() > 0)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "True", "True"]
