from tracking_app.wsgi import app
class _NoWrite:
    def submit(self, row): pass
app.config["OPENS"] = _NoWrite()
