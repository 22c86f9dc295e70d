"""The tracker recipients hit (opens, clicks, unsubscribes, responses): built in the tracker issue."""
