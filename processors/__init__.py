"""ready analyses"""
