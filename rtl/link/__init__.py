"""The interchip link: lane PCS, training, flits, go-back-N retry, credits and RAS.

``docs/link.md`` is the contract; :mod:`.layouts` holds every format and counter layout.
"""
