"""The web console (issue 17): server-rendered pages at /console for the platform operator and
for tenants, signed in with an API key, with a little JavaScript shipped in this package (no
CDN, no build step). api/console/app.py is what create_app registers."""
