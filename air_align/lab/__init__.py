"""air_align.lab"""
