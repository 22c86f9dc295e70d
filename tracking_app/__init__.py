"""The tracker recipients hit: opens, clicks, unsubscribes, preferences, feedback, surveys, the analytics API.

The Flask app is built by tracking_app.app.create_app; importing this package imports no Flask, so
the flows can share its pieces that are not web code (tracking_app.classify).
"""
