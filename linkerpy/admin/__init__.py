"""
The admin server: health, config, metrics, delegation, shutdown.
"""
