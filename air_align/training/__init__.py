"""air_align.training"""
