"""air_align.evaluation"""
