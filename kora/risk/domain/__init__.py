"""The risk module's pure domain: the policy, the assessment and the anomaly flags. No I/O."""
