"""Real-time call audio analytics: RTP tap, VAD, agitation, keywords, diarization.

Everything here is pure computation on audio frames; PBX wiring lives elsewhere
so the analysers can be tested and benchmarked without a switch.
"""
