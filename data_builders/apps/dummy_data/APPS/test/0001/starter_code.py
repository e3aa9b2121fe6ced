class Solution:
    def inc(self, x):
