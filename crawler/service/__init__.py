"""Long-running scheduled crawls: the timetable (pure), the ``[[schedule]]`` config, the run
history, and the daemon loop that starts one ``crawler run`` child per due time.

The word "scheduler" already names the request dispatcher (``crawler.scheduler``), as in Scrapy.
"""
