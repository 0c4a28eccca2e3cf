"""air_align.data"""
