"""Portal: the site web portal, summary, dashboard and JSON API."""
