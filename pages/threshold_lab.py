import streamlit as st

st.title('threshold_lab')
st.info('This page is being built.')
