"""Submarine's experiment templates: an ExperimentSpec with ``{{param}}`` placeholders, stored per
namespace, and experiments submitted from it with parameter values."""
