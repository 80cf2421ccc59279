"""What a run did, shown: training-dynamics plots and the HTML granularity inspector."""
