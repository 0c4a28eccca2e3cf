"""air_align.rewards"""
