"""air_align.real"""
