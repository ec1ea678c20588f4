"""KFP pipeline definitions, compilation and submission."""
