"""Deployment targets: one folder each, found by `pipeline.plugins` (the interface is described there).

Adding a target is adding a folder here (or a package with an `edge_pipeline.targets` entry point): nothing in
`pipeline/` names a target. A target's `compile` output is cached like any step's; its `measure` is re-run whenever
the user asks for fresh numbers (`pipeline run --remeasure`, nightly), and always after it could not reach a device
it was asked to use (`ctx.unavailable(...)`): a phone plugged in since must be measured, not remembered as absent.

This package imports nothing itself: child processes (`python -m targets.openvino.child`) import it first.
"""
