"""asgi"""
