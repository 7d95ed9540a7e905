"""The benchmark of issue 3: bulkmig against the raw COPY limits and its peers, as ratios in one run."""
