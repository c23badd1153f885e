"""Document quality: text cleaning and the quality filters with their configs."""
