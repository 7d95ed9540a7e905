"""fullload"""
