"""The randomized incident campaign (issue 14): the operator's reconcile loop, its
policy and the simulator's model on one fake clock. docs/incident-campaign.md."""
