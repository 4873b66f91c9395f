"""The report page (``metrics/report.html``): Table 1 beside the images it summarises."""
