"""What a province reports to the national center: a versioned KPI snapshot, and the job that delivers it."""
