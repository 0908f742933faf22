"""The standalone program, apart from the library a web app embeds: `imgproxy` (the CLI), its
ASGI app (/healthz, /metrics, the demo page), the uvicorn protocols and worker processes it
runs, the Prometheus exposition and the configuration reference. Only this package imports
uvicorn or tqdm (the `server` extra), and nothing outside it imports it.
"""
