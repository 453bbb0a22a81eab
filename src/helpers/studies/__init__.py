"""The chapters' measurements and verdicts: evaluation, scores, the adaptive study, alternatives, results files."""
