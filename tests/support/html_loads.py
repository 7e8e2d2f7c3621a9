#!/usr/bin/env python3
"""Reads an HTML document on stdin with Python's own html.parser (independent of the
service's HTML rewriter) and prints, as JSON, everything a mail client would load or show:

- "loads": [tag, attribute, value] for every src, srcset, background, poster, data,
  lowsrc, dynsrc, imagesrcset attribute, every <link href>, SVG href, and every url(...)
  or @import found in a style attribute or a <style> element;
- "images": the src of every <img>;
- "text": the visible text and every attribute value and comment, concatenated.
"""
import json
import re
import sys
from html.parser import HTMLParser

LOAD_ATTRS = {"src", "srcset", "background", "poster", "data", "lowsrc", "dynsrc", "imagesrcset"}
CSS_LOAD = re.compile(r"url\s*\(\s*['\"]?([^'\")]*)|@import\s+['\"]([^'\"]*)", re.I)


class Loads(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.loads, self.images, self.text = [], [], []
        self.in_style = False

    def css(self, where, css):
        for m in CSS_LOAD.finditer(css):
            self.loads.append([where, "css", m.group(1) or m.group(2) or ""])

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            value = value or ""
            self.text.append(value)
            if name in LOAD_ATTRS or (tag == "link" and name == "href"):
                self.loads.append([tag, name, value])
            if name in ("href", "xlink:href") and tag in ("image", "use", "feimage"):
                self.loads.append([tag, name, value])
            if name == "style":
                self.css(tag, value)
            if tag == "img" and name == "src":
                self.images.append(value)
        self.in_style = tag == "style"

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "style":
            self.in_style = False

    def handle_data(self, data):
        if self.in_style:
            self.css("style", data)
        self.text.append(data)

    def handle_comment(self, data):
        self.text.append(data)


p = Loads()
p.feed(sys.stdin.read())
p.close()
json.dump({"loads": p.loads, "images": p.images, "text": "\n".join(p.text)}, sys.stdout)
