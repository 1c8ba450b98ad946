"""Plans: cost sources, the fusion DP, the strategies and baselines, refinement and evaluation against an oracle."""
