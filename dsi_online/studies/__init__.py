"""Studies that write result folders (heatmap, sweep, table, bench), and the one resumable
grid driver that heatmap and sweep share."""
