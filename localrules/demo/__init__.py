"""The interactive playground: ``localrules demo mnist-selfclassify|restore``.

The CA runs on the server in the library's own models; a browser page draws, erases, loads
test digits and watches the grid, streamed over a WebSocket (one session, one grid per tab).

    session.py    test digits, one session per connection (the grid, its edits and its steps)
    protocol.py   validation of client messages, encoding of frames
    server.py     the aiohttp application: page, static files, /ws, clean shutdown
    static/       index.html + app.js (no build step, no external resources)
"""
